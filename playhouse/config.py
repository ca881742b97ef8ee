"""Settings: one struct per subsystem, read once at the entrypoint and passed down.

Sources, later wins: defaults, an optional ``playhouse.toml`` (tables ``[storage]``,
``[web]``, ``[worker]``, ``[scheduler]``, ``[moderation]`` and top-level keys), then environment
variables ``PLAYHOUSE_<SECTION>_<FIELD>`` (``PLAYHOUSE_WEB_PORT=8080``) or
``PLAYHOUSE_<FIELD>`` for top-level fields. Two short aliases exist because DESIGN.md
names them: ``PLAYHOUSE_STORAGE`` (the connection string) and ``PLAYHOUSE_REDIS_URL``.
Library code never reads ``os.environ``; it gets a :class:`Settings`.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import msgspec

from playhouse.errors import ConfigError


def _doc(text: str) -> msgspec.Meta:
    return msgspec.Meta(description=text)


class StorageSettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    connection_string: Annotated[
        str | None,
        _doc("Azure Storage connection string; unset starts the local Azurite emulator."),
    ] = None
    timeout_s: Annotated[float, _doc("Seconds to wait for storage before failing.")] = 10.0
    emulator_dir: Annotated[
        str, _doc("Folder for Azurite's data when the emulator is used.")
    ] = "var/azurite"
    emulator_file: Annotated[
        str,
        _doc("Where `playhouse run` writes its emulator's connection string while it runs "
             "(every other command finds the emulator there when no connection string is set)."),
    ] = "var/storage.conn"
    namespace: Annotated[
        str,
        _doc("Prefix of every table, queue and container name (several playhouses, one account)."),
    ] = ""

    secret_fields: ClassVar[tuple[str, ...]] = ("connection_string",)


class WebSettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    host: Annotated[str, _doc("Address the web app binds to.")] = "127.0.0.1"
    port: Annotated[int, _doc("Port the web app listens on.")] = 8000
    secret_key: Annotated[
        str | None,
        _doc("Secret for session cookies (32+ chars); unset generates one under var/."),
    ] = None
    redis_url: Annotated[
        str | None, _doc("Redis URL for multi-instance fan-out; unset uses memory.")
    ] = None
    secure_cookies: Annotated[bool, _doc("Mark cookies Secure (serve behind TLS).")] = False
    posts_per_minute: Annotated[int, _doc("Posts one user may make per minute.")] = 20
    logins_per_minute: Annotated[int, _doc("Login attempts per IP per minute.")] = 10
    votes_per_minute: Annotated[
        int, _doc("Votes (and changes of a vote) one person may make per minute.")
    ] = 60
    login_failures_per_minute: Annotated[
        int,
        _doc("Wrong passwords for one user name from one address per minute; past it that "
             "address waits (the name's owner elsewhere is not locked out)."),
    ] = 5
    login_failures_per_user_per_minute: Annotated[
        int,
        _doc("Wrong passwords for one user name from all addresses per minute; past it only "
             "an address with no recent failures for that name may try (a correct password "
             "from the owner's device still gets in)."),
    ] = 30
    history_page: Annotated[int, _doc("Items sent per page of history.")] = 50
    ws_messages_per_s: Annotated[
        float, _doc("Messages one websocket may send per second, on average (then too_fast).")
    ] = 10.0
    ws_message_burst: Annotated[
        float, _doc("Messages one websocket may send at once before its rate applies.")
    ] = 40.0
    ws_patience: Annotated[
        float,
        _doc("Messages past its budget a websocket may send in a row (one forgiven per "
             "second) before it is closed with 1008 (policy violation)."),
    ] = 20.0
    ws_sockets_per_address: Annotated[
        int, _doc("Websockets open at once from one address (all instances together).")
    ] = 64
    ws_sockets_per_user: Annotated[
        int, _doc("Websockets open at once for one logged-in user (all instances together).")
    ] = 16
    admins: Annotated[
        tuple[str, ...],
        _doc("User names that are site admins: they open the status page, moderate every "
             "room and ban from the site (comma-separated in the environment; "
             "`playhouse admin grant` makes more)."),
    ] = ()
    metrics_token: Annotated[
        str | None,
        _doc("Bearer token /metrics requires; unset leaves /metrics open (a private network)."),
    ] = None
    sample_interval_s: Annotated[
        float, _doc("Seconds between the queue-depth samples the status page charts.")
    ] = 15.0
    sample_watch_s: Annotated[
        float,
        _doc("Queue depths are sampled only this long after someone last opened the status "
             "page or scraped /metrics (nobody watching costs no storage request)."),
    ] = 600.0
    bots_per_post: Annotated[
        int, _doc("Bots one post may call (mentions, reply, default bot); the rest are not "
                  "asked, and the poster is told which.")
    ] = 3
    bot_calls_per_minute: Annotated[
        int, _doc("Bot calls one user may make per minute (each bot asked counts one).")
    ] = 10
    rerolls_per_comment: Annotated[
        int, _doc("Times another answer may be asked of one bot comment (a re-roll); each "
                  "also counts as a bot call of the person asking.")
    ] = 5
    people_meet_caps: Annotated[
        bool,
        _doc("A person's call to a bot at its per-thread or hourly room cap is declined, "
             "saying why and when the cap lifts (false: people's calls are answered whenever "
             "the bot is awake; the caps then hold the scheduler only)."),
    ] = True
    rooms_per_hour: Annotated[
        int, _doc("Rooms one user may create per hour (all at once, or spread out).")
    ] = 10
    reports_per_hour: Annotated[
        int, _doc("Reports one user may file per hour (all at once, or spread out); past it "
                  "a report is refused with the time to wait.")
    ] = 20
    bot_call_grace_s: Annotated[
        int,
        _doc("Seconds a recorded bot call waits before any instance makes it in place of "
             "the one that recorded it (which may have died)."),
    ] = 30
    max_deliveries: Annotated[
        int, _doc("Deliveries of one result whose application fails before it is parked.")
    ] = 5
    results_poll_max_s: Annotated[
        float, _doc("Longest wait between polls of a result queue while no answer is awaited.")
    ] = 5.0
    expect_s: Annotated[
        float,
        _doc("Poll a result queue quickly at most this long for an answer this instance asked "
             "for (the wait grows with the time already waited)."),
    ] = 120.0
    activity_window_s: Annotated[
        float,
        _doc("Room and thread counters are written this long after what they count, one "
             "write per row for everything counted meanwhile."),
    ] = 1.0
    waiting_interval_s: Annotated[
        float,
        _doc("Seconds between looks at where the bots' pending answers stand (queued, "
             "generating, retrying, no worker running): their placeholders change live."),
    ] = 2.0
    waiting_grace_s: Annotated[
        float,
        _doc("A placeholder is looked after once it has waited this long: an answer that "
             "comes sooner costs no storage request."),
    ] = 2.0

    secret_fields: ClassVar[tuple[str, ...]] = ("secret_key", "redis_url", "metrics_token")


class WorkerSettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    max_models: Annotated[int, _doc("Models kept loaded at once (LRU).")] = 4
    max_memory_mb: Annotated[int, _doc("Memory budget for loaded models, MiB.")] = 8192
    batch_size: Annotated[int, _doc("Requests generated together at most.")] = 32
    gather_ms: Annotated[
        int, _doc("Wait this long to fill a batch of bot requests (not with a person's)."),
    ] = 40
    visibility_timeout_s: Annotated[
        int, _doc("Seconds a received message stays hidden from other workers.")
    ] = 120
    max_deliveries: Annotated[
        int, _doc("Deliveries of one request at most; then it fails visibly (poison).")
    ] = 3
    preempt_poll_s: Annotated[
        float,
        _doc("While a group of bots' requests generates, look for a person's this often and "
             "stop the group for it (the group runs again right after; 0: never stop one)."),
    ] = 0.25
    poll_min_s: Annotated[float, _doc("Shortest wait between empty polls.")] = 0.05
    poll_max_s: Annotated[float, _doc("Longest wait between empty polls.")] = 2.0
    poll_linger_s: Annotated[
        float, _doc("Keep polling at poll_min_s this long after the last work, then back off.")
    ] = 10.0
    device: Annotated[str, _doc("torch device: auto, cpu, cuda.")] = "auto"
    threads: Annotated[int, _doc("torch CPU threads (0 keeps torch's default).")] = 0
    continuous_batching: Annotated[
        bool, _doc("Use transformers' continuous batching instead of padded generate().")
    ] = False
    engine: Annotated[
        Literal["auto", "transformers", "ctranslate2"],
        _doc("Text generation engine: auto (CTranslate2 when installed and the model converts "
             "and passes the int8 quality gate, else transformers), transformers or "
             "ctranslate2."),
    ] = "auto"
    quantization: Annotated[
        Literal["auto", "int8", "int8_float32", "int16", "float32", "float16", "bfloat16",
                "int8_float16", "int8_bfloat16"],
        _doc("CTranslate2 weights: auto is int8 on a CPU and float16 on CUDA (float32 when "
             "the quality gate rejects them)."),
    ] = "auto"
    convert_dir: Annotated[
        str, _doc("Folder of CTranslate2 conversions (empty: ctranslate2/ under models_dir).")
    ] = ""
    share_prefixes: Annotated[
        bool,
        _doc("CTranslate2: compute a prompt prefix shared by requests of one batch (a thread's "
             "post and common ancestors) once."),
    ] = True
    launch_free: Annotated[
        bool,
        _doc("transformers on CUDA: static KV cache and the decode step as CUDA graphs "
             "(warmed up per model; eager when capture fails). Never used on a CPU."),
    ] = True
    heartbeat_s: Annotated[
        float, _doc("Seconds between heartbeats written to storage (status page, /metrics).")
    ] = 15.0
    finish_within_s: Annotated[
        float,
        _doc("After SIGTERM, seconds the batch in hand may run on; then it is interrupted "
             "and its requests go back to the queue (keep it under the supervisor's grace)."),
    ] = 5.0


class SchedulerSettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    enabled: Annotated[bool, _doc("Run the scheduler in the web process.")] = True
    sweep_interval_s: Annotated[float, _doc("Seconds between reply sweeps.")] = 15.0
    background_max_depth: Annotated[
        int, _doc("Skip scheduling rounds while gen-background or gen-results is deeper.")
    ] = 64
    lease_s: Annotated[int, _doc("Scheduler leadership lease length (15-60 s).")] = 30
    pending_deadline_s: Annotated[
        float, _doc("Jobs pending longer than this are re-queued or failed.")
    ] = 600.0
    time_scale: Annotated[
        float,
        _doc("Persona time runs this much faster: posting rates multiply, the caps' hours "
             "and reply ages shrink (demo: make a day pass in minutes)."),
    ] = 1.0
    housekeeping_interval_s: Annotated[
        float, _doc("Seconds between housekeeping passes (stuck jobs, poison summary).")
    ] = 60.0
    threads_per_room: Annotated[
        int, _doc("Newest threads per room each scheduling round reads.")
    ] = 50
    max_replies_per_sweep: Annotated[
        int, _doc("Most bot replies (and posts) one scheduling round asks for.")
    ] = 12
    reply_delay_s: Annotated[
        float, _doc("Longest pause before a bot notices a comment (each bot draws its own).")
    ] = 60.0
    max_queued: Annotated[
        int, _doc("Times a stuck job is queued in all before it is failed visibly.")
    ] = 3
    poison_age_s: Annotated[
        float, _doc("Poison messages older than this are counted as old in the summary.")
    ] = 3600.0
    seed: Annotated[
        int | None, _doc("Seed of the scheduler's random draws; unset draws a fresh one.")
    ] = None


class ModerationSettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    blocked_words: Annotated[
        tuple[str, ...],
        _doc("Words (or phrases) people may not use in titles, posts, comments and room "
             "descriptions: matched as whole words, ignoring letter case, accents, "
             "look-alike letters, zero-width characters, digits for letters (sh1t) and "
             "letters spread out (s.h.i.t). Comma-separated in the environment."),
    ] = ()
    filter_mode: Annotated[
        Literal["refuse", "hold"],
        _doc("What a blocked word does to a post or comment: refuse (the poster is told "
             "which word, and keeps the text) or hold (stored, shown to nobody but its "
             "author until a moderator approves it in /mod). Room descriptions are always "
             "refused."),
    ] = "refuse"


class Settings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    storage: StorageSettings = msgspec.field(default_factory=StorageSettings)
    web: WebSettings = msgspec.field(default_factory=WebSettings)
    worker: WorkerSettings = msgspec.field(default_factory=WorkerSettings)
    scheduler: SchedulerSettings = msgspec.field(default_factory=SchedulerSettings)
    moderation: ModerationSettings = msgspec.field(default_factory=ModerationSettings)
    personas_dir: Annotated[str, _doc("Folder of persona TOML files.")] = "personas"
    models_dir: Annotated[str, _doc("Folder where demo models are built.")] = "var/models"
    var_dir: Annotated[str, _doc("Folder for local state (emulator data, secrets).")] = "var"
    log_level: Annotated[str, _doc("debug, info, warning or error.")] = "info"
    log_format: Annotated[str, _doc("auto (pretty on a TTY), json or console.")] = "auto"

    @classmethod
    def load(
        cls, environ: Mapping[str, str], toml_path: str | Path | None = "playhouse.toml"
    ) -> Settings:
        """Build settings from an optional TOML file and ``environ``."""
        raw: dict[str, Any] = {}
        if toml_path is not None and Path(toml_path).is_file():
            try:
                raw = tomllib.loads(Path(toml_path).read_text(encoding="utf-8"))
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{toml_path}: {exc}") from exc
        _apply_env(raw, environ)
        try:
            return msgspec.convert(raw, type=cls, strict=False)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"settings: {exc}") from exc


_SECTIONS: dict[str, type[msgspec.Struct]] = {
    "storage": StorageSettings,
    "web": WebSettings,
    "worker": WorkerSettings,
    "scheduler": SchedulerSettings,
    "moderation": ModerationSettings,
}
_ALIASES = {
    "PLAYHOUSE_STORAGE": ("storage", "connection_string"),
    "PLAYHOUSE_REDIS_URL": ("web", "redis_url"),
}


def _apply_env(raw: dict[str, Any], environ: Mapping[str, str]) -> None:
    top_fields = {f for f in Settings.__struct_fields__ if f not in _SECTIONS}
    for key, value in environ.items():
        if not key.startswith("PLAYHOUSE_"):
            continue
        if key in _ALIASES:
            section, name = _ALIASES[key]
            _section(raw, section)[name] = value
            continue
        rest = key.removeprefix("PLAYHOUSE_").lower()
        for section, struct in _SECTIONS.items():
            prefix = section + "_"
            if rest.startswith(prefix) and rest[len(prefix) :] in struct.__struct_fields__:
                name = rest[len(prefix) :]
                _section(raw, section)[name] = _env_value(struct, name, value)
                break
        else:
            if rest in top_fields:
                raw[rest] = value


def _env_value(struct: type[msgspec.Struct], name: str, value: str) -> Any:
    """A list-valued setting is comma-separated in the environment; others stay text."""
    info = msgspec.inspect.type_info(struct)
    assert isinstance(info, msgspec.inspect.StructType)
    for field in info.fields:
        kind = field.type
        if isinstance(kind, msgspec.inspect.Metadata):
            kind = kind.type
        if field.name == name and isinstance(
            kind, msgspec.inspect.VarTupleType | msgspec.inspect.ListType
        ):
            return [part.strip() for part in value.split(",") if part.strip()]
    return value


def env_names() -> set[str]:
    """Every environment variable :meth:`Settings.load` reads (deploy files are checked
    against it)."""
    names = set(_ALIASES)
    for section, struct in _SECTIONS.items():
        names |= {f"PLAYHOUSE_{section.upper()}_{f.upper()}" for f in struct.__struct_fields__}
    names |= {f"PLAYHOUSE_{f.upper()}" for f in Settings.__struct_fields__ if f not in _SECTIONS}
    return names


def _section(raw: dict[str, Any], section: str) -> dict[str, Any]:
    """The table ``raw[section]``, created when absent; ConfigError when the file set it to
    a plain value (``web = 3``), which an environment variable cannot be merged into."""
    table = raw.setdefault(section, {})
    if not isinstance(table, dict):
        raise ConfigError(f"settings: {section}: expected a [{section}] table, got {table!r}")
    return table


def field_docs(struct: type[msgspec.Struct]) -> dict[str, str]:
    """Field name → description, for ``playhouse config`` and the documentation test."""
    info = msgspec.inspect.type_info(struct)
    assert isinstance(info, msgspec.inspect.StructType)
    docs: dict[str, str] = {}
    for field in info.fields:
        desc = ""
        if isinstance(field.type, msgspec.inspect.Metadata):
            desc = str((field.type.extra_json_schema or {}).get("description", ""))
        docs[field.name] = desc
    return docs


_SECRET_IN_CONN = re.compile(r"(?i)\b(AccountKey|SharedAccessSignature|password)=([^;]+)")
_SAS_SIG = re.compile(r"(?i)([?&]sig)=([^&;\s]+)")
_URL_PASSWORD = re.compile(r"//([^:/@\s]*):([^@/\s]*)@")
_CONN_KEY = re.compile(
    r"(?i)^\s*(DefaultEndpointsProtocol|AccountName|AccountKey|SharedAccessSignature"
    r"|EndpointSuffix|UseDevelopmentStorage|DevelopmentStorageProxyUri"
    r"|(Blob|Queue|Table|File)(Secondary)?Endpoint)="
)


def redact(text: str) -> str:
    """``text`` with every secret-looking part (``AccountKey=``, ``SharedAccessSignature=``,
    ``password=``, a SAS ``sig=``, a URL's password) replaced by ``***``; the rest is kept,
    so a log message stays readable."""
    text = _SECRET_IN_CONN.sub(lambda m: f"{m.group(1)}=***", text)
    text = _SAS_SIG.sub(lambda m: f"{m.group(1)}=***", text)
    return _URL_PASSWORD.sub(r"//\1:***@", text)


def mask(value: str | None) -> str:
    """Hide the secret parts of a connection string or URL, or all of a plain secret.

    A connection string (it starts with one of Azure's keys) or a URL keeps everything but
    its secrets; any other value is taken as a secret itself and shown as ``***`` (with
    its first two characters when it is long enough that they give nothing away).
    """
    if value is None:
        return "(unset)"
    masked = redact(value)
    if masked != value or _CONN_KEY.match(value) or "://" in value:
        return masked
    return value[:2] + "***" if len(value) > 8 else "***"


def effective(settings: Settings) -> list[tuple[str, str, str]]:
    """(name, value with secrets masked, description) for every setting."""
    rows: list[tuple[str, str, str]] = []
    for section, struct in _SECTIONS.items():
        obj = getattr(settings, section)
        docs = field_docs(struct)
        secrets: tuple[str, ...] = getattr(struct, "secret_fields", ())
        for name in struct.__struct_fields__:
            value = getattr(obj, name)
            shown = mask(value) if name in secrets else str(value)
            rows.append((f"{section}.{name}", shown, docs.get(name, "")))
    docs = field_docs(Settings)
    for name in Settings.__struct_fields__:
        if name in _SECTIONS:
            continue
        rows.append((name, str(getattr(settings, name)), docs.get(name, "")))
    return rows
