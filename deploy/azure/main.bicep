// playhouse on Azure: a Storage account with every queue, table and container the code
// names (playhouse/constants.py), an App Service (Linux) running `playhouse web` with
// websockets on, optionally Azure Cache for Redis (several web instances) and a GPU VM
// running the worker under systemd (deploy/systemd). Outputs the connection settings.
//
//   az group create -n playhouse -l westeurope
//   az deployment group create -g playhouse -f deploy/azure/main.bicep \
//     -p deploy/azure/main.parameters.json -p webSecretKey=$(openssl rand -base64 48)

targetScope = 'resourceGroup'

@description('Azure region for every resource.')
param location string = resourceGroup().location

@description('Short prefix of resource names (3-11 lowercase letters or digits).')
@minLength(3)
@maxLength(11)
param namePrefix string = 'playhouse'

@description('Storage redundancy.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
])
param storageSku string = 'Standard_LRS'

@description('App Service plan SKU (B1 and up keep websockets and Always On).')
param webSku string = 'B1'

@description('Web instances; more than one needs Redis for the live fan-out.')
@minValue(1)
@maxValue(10)
param webInstances int = 1

@description('Container image for the web app (deploy/docker/Dockerfile.web); empty runs the Python runtime on the code deployed with `az webapp deploy`.')
param webImage string = ''

@description('Session and CSRF secret for the web app (32+ characters).')
@secure()
@minLength(32)
param webSecretKey string

@description('Comma-separated user names allowed on the /status page.')
param webAdmins string = ''

@description('Bearer token required by /metrics (empty leaves it open).')
@secure()
param metricsToken string = ''

@description('Create Azure Cache for Redis for multi-instance fan-out.')
param enableRedis bool = false

@description('Create a GPU VM that runs a text worker under systemd.')
param enableGpuWorker bool = false

@description('GPU VM size (NVIDIA T4: NC4as_T4_v3).')
param gpuVmSize string = 'Standard_NC4as_T4_v3'

@description('Admin user of the GPU VM.')
param gpuAdminUser string = 'playhouse'

@description('SSH public key of the GPU VM admin user.')
param gpuSshPublicKey string = ''

@description('pip requirement the GPU VM installs (a wheel URL, a git URL or a package name).')
param workerPackage string = 'bot-playhouse[worker]'

var suffix = uniqueString(resourceGroup().id)
var storageName = take(toLower('${namePrefix}${suffix}'), 24)
var webName = '${namePrefix}-web-${suffix}'
var redisName = '${namePrefix}-redis-${suffix}'

// Every name in playhouse/constants.py (tests/unit/test_deploy.py checks it).
var queueNames = [
  'gen-interactive'
  'gen-background'
  'gen-image'
  'gen-results-interactive'
  'gen-results'
  'gen-interactive-poison'
  'gen-background-poison'
  'gen-image-poison'
  'gen-results-interactive-poison'
  'gen-results-poison'
]
var tableNames = [
  'users'
  'rooms'
  'members'
  'threads'
  'comments'
  'jobs'
  'workers'
  'votes'
  'listings'
  'authored'
  'metrics'
  'reports'
  'modlog'
  'inbox'
  'revisions'
  'progress'
  'decisions'
]
var containerNames = [
  'images'
  'leases'
  'payloads'
  'explanations'
]

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageName
  location: location
  sku: {
    name: storageSku
  }
  kind: 'StorageV2'
  properties: {
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    accessTier: 'Hot'
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [for name in queueNames: {
  parent: queueService
  name: name
}]

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource tables 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [for name in tableNames: {
  parent: tableService
  name: name
}]

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [for name in containerNames: {
  parent: blobService
  name: name
  properties: {
    publicAccess: 'None'
  }
}]

var storageConnection = 'DefaultEndpointsProtocol=https;AccountName=${storage.name};AccountKey=${storage.listKeys().keys[0].value};EndpointSuffix=${environment().suffixes.storage}'

resource redis 'Microsoft.Cache/redis@2024-03-01' = if (enableRedis) {
  name: redisName
  location: location
  properties: {
    sku: {
      name: 'Basic'
      family: 'C'
      capacity: 0
    }
    enableNonSslPort: false
    minimumTlsVersion: '1.2'
  }
}

var redisUrl = enableRedis ? 'rediss://:${redis.listKeys().primaryKey}@${redis.properties.hostName}:6380/0' : ''

resource plan 'Microsoft.Web/serverfarms@2023-12-01' = {
  name: '${namePrefix}-plan-${suffix}'
  location: location
  kind: 'linux'
  sku: {
    name: webSku
    capacity: webInstances
  }
  properties: {
    reserved: true
  }
}

var baseSettings = [
  {
    name: 'PLAYHOUSE_STORAGE'
    value: storageConnection
  }
  {
    name: 'PLAYHOUSE_WEB_SECRET_KEY'
    value: webSecretKey
  }
  {
    name: 'PLAYHOUSE_WEB_SECURE_COOKIES'
    value: 'true'
  }
  {
    name: 'PLAYHOUSE_WEB_HOST'
    value: '0.0.0.0'
  }
  {
    name: 'PLAYHOUSE_WEB_PORT'
    value: '8000'
  }
  {
    name: 'PLAYHOUSE_WEB_ADMINS'
    value: webAdmins
  }
  {
    name: 'PLAYHOUSE_WEB_METRICS_TOKEN'
    value: metricsToken
  }
  {
    name: 'PLAYHOUSE_LOG_FORMAT'
    value: 'json'
  }
  {
    name: 'PLAYHOUSE_VAR_DIR'
    value: '/home/playhouse'
  }
  {
    name: 'WEBSITES_PORT'
    value: '8000'
  }
  {
    name: 'SCM_DO_BUILD_DURING_DEPLOYMENT'
    value: 'true'
  }
]
var redisSettings = enableRedis ? [
  {
    name: 'PLAYHOUSE_REDIS_URL'
    value: redisUrl
  }
] : []

resource web 'Microsoft.Web/sites@2023-12-01' = {
  name: webName
  location: location
  kind: 'app,linux'
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      linuxFxVersion: empty(webImage) ? 'PYTHON|3.11' : 'DOCKER|${webImage}'
      appCommandLine: empty(webImage) ? 'playhouse web' : ''
      webSocketsEnabled: true
      alwaysOn: true
      http20Enabled: true
      ftpsState: 'Disabled'
      minTlsVersion: '1.2'
      healthCheckPath: '/healthz'
      appSettings: concat(baseSettings, redisSettings)
    }
  }
}

// ---- optional GPU worker VM: outbound only (no public IP, no inbound rule) ----------

var workerUnit = loadTextContent('../systemd/playhouse-worker@.service')
var workerEnv = 'PLAYHOUSE_STORAGE=${storageConnection}\nPLAYHOUSE_WORKER_DEVICE=cuda\n'
var cloudInit = replace(replace(replace(loadTextContent('gpu-worker.cloud-init.yaml'), '__WORKER_UNIT_B64__', base64(workerUnit)), '__WORKER_ENV_B64__', base64(workerEnv)), '__WORKER_PACKAGE__', workerPackage)

resource workerNsg 'Microsoft.Network/networkSecurityGroups@2023-11-01' = if (enableGpuWorker) {
  name: '${namePrefix}-worker-nsg'
  location: location
  properties: {
    securityRules: []
  }
}

resource workerVnet 'Microsoft.Network/virtualNetworks@2023-11-01' = if (enableGpuWorker) {
  name: '${namePrefix}-vnet'
  location: location
  properties: {
    addressSpace: {
      addressPrefixes: [
        '10.42.0.0/16'
      ]
    }
    subnets: [
      {
        name: 'workers'
        properties: {
          addressPrefix: '10.42.1.0/24'
          networkSecurityGroup: {
            id: workerNsg.id
          }
        }
      }
    ]
  }
}

resource workerNic 'Microsoft.Network/networkInterfaces@2023-11-01' = if (enableGpuWorker) {
  name: '${namePrefix}-worker-nic'
  location: location
  properties: {
    ipConfigurations: [
      {
        name: 'ipconfig'
        properties: {
          subnet: {
            id: workerVnet.properties.subnets[0].id
          }
          privateIPAllocationMethod: 'Dynamic'
        }
      }
    ]
  }
}

resource workerVm 'Microsoft.Compute/virtualMachines@2024-03-01' = if (enableGpuWorker) {
  name: '${namePrefix}-worker'
  location: location
  properties: {
    hardwareProfile: {
      vmSize: gpuVmSize
    }
    storageProfile: {
      imageReference: {
        publisher: 'Canonical'
        offer: 'ubuntu-24_04-lts'
        sku: 'server'
        version: 'latest'
      }
      osDisk: {
        createOption: 'FromImage'
        diskSizeGB: 128
        managedDisk: {
          storageAccountType: 'Premium_LRS'
        }
      }
    }
    osProfile: {
      computerName: '${namePrefix}-worker'
      adminUsername: gpuAdminUser
      customData: base64(cloudInit)
      linuxConfiguration: {
        disablePasswordAuthentication: true
        ssh: {
          publicKeys: [
            {
              path: '/home/${gpuAdminUser}/.ssh/authorized_keys'
              keyData: gpuSshPublicKey
            }
          ]
        }
      }
    }
    networkProfile: {
      networkInterfaces: [
        {
          id: workerNic.id
        }
      ]
    }
  }
}

resource gpuDriver 'Microsoft.Compute/virtualMachines/extensions@2024-03-01' = if (enableGpuWorker) {
  parent: workerVm
  name: 'NvidiaGpuDriverLinux'
  location: location
  properties: {
    publisher: 'Microsoft.HpcCompute'
    type: 'NvidiaGpuDriverLinux'
    typeHandlerVersion: '1.9'
    autoUpgradeMinorVersion: true
  }
}

output storageAccountName string = storage.name
output webUrl string = 'https://${web.properties.defaultHostName}'
output webHealthUrl string = 'https://${web.properties.defaultHostName}/healthz'
output workerVmName string = enableGpuWorker ? workerVm.name : ''
#disable-next-line outputs-should-not-contain-secrets
output storageConnectionString string = storageConnection
#disable-next-line outputs-should-not-contain-secrets
output redisUrl string = redisUrl
