"""``playhouse admin grant|revoke|ban|unban USER``: the operator's hand on the site.

``grant``/``revoke`` make a person a site admin or not (site admins moderate every room
and ban from the site); ``ban``/``unban`` ban a person from the whole site or lift it. A
ban also ends every session of theirs, and tells their open pages on every running web
instance to close: through Redis (``web.redis_url``) at once; a web instance without
Redis (one alone) notices within seconds. Every action is in the mod log, by
``(operator)``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from playhouse.config import Settings

HELP = "site admins and site bans: grant, revoke, ban or unban a user"


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("grant", "revoke", "ban", "unban"),
                        help="grant or revoke site admin; ban from the site or lift it")
    parser.add_argument("user", metavar="USER", help="the user name")
    parser.add_argument("--reason", default="", help="why (kept in the mod log; a ban's "
                        "reason is shown to the banned)")


def main(args: argparse.Namespace, settings: Settings) -> int:
    sys.stdout.write(asyncio.run(act(settings, args.action, args.user, args.reason)))
    return 0


async def act(settings: Settings, action: str, user: str, reason: str = "") -> str:
    """Do ``action`` to ``user`` as the operator; what to tell them (a PlayhouseError, with
    its reason, when it cannot be done)."""
    from playhouse.events import BackendPublisher, Broadcaster
    from playhouse.moderation.actions import Moderation
    from playhouse.moderation.roles import Powers
    from playhouse.storage import Storage

    redis = None
    publisher: BackendPublisher | None = None
    try:
        async with Storage.open(settings.storage) as storage:
            if settings.web.redis_url is not None:
                from litestar.channels.backends.redis import RedisChannelsPubSubBackend
                from redis.asyncio import Redis

                redis = Redis.from_url(settings.web.redis_url)
                publisher = BackendPublisher(RedisChannelsPubSubBackend(redis=redis))
            broadcast = Broadcaster(publisher or _nowhere, storage.namespace)
            moderation = Moderation(storage, broadcast, settings.web.admins)
            operator = Powers.the_operator()
            if action == "grant":
                name = await moderation.grant(operator, user, None, reason)
                return f"u/{name} is a site admin\n"
            if action == "revoke":
                name = await moderation.revoke(operator, user, None, reason)
                still = name.casefold() in {a.casefold() for a in settings.web.admins}
                return f"u/{name} is no longer a site admin" + (
                    " by grant, but stays one by the settings (web.admins)\n" if still
                    else "\n")
            if action == "ban":
                name = await moderation.ban(operator, user, None, reason)
                if publisher is not None:
                    await publisher.drain()
                told = ("their open pages were told to close (through Redis)"
                        if publisher is not None else
                        "a running web instance closes their open pages within seconds")
                return f"u/{name} is banned from the site: their sessions are ended, {told}\n"
            name = await moderation.unban(operator, user, None, reason)
            return f"u/{name} may use the site again (they log in anew)\n"
    finally:
        if redis is not None:
            await redis.aclose()


def _nowhere(data: bytes, channels: object) -> None:
    """No fan-out to publish on (no Redis): the web instances find the ban themselves."""
    del data, channels
