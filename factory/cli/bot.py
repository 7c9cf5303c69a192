"""`factory bot`: the Discord bot (bot/discord_bot.py) from a checkout of the factory."""

from __future__ import annotations

import sys
from pathlib import Path

from factory.base.errors import UserError

ROOT = Path(__file__).resolve().parents[2]  # the checkout: factory/cli/ -> ./

HELP = """\
The token: DISCORD_TOKEN, or DISCORD_TOKEN=... in $FACTORY_HOME/secrets.env (chmod 600).
  FACTORY_DISCORD_GUILDS=ID,ID           the servers where it answers (commands are registered there on start)
  FACTORY_DISCORD_ROLES=name|id,...      roles allowed to /finetune (empty: everyone in those servers)
  FACTORY_DISCORD_OPERATOR_ROLES=...     roles that may cancel anyone's job and list all jobs
  FACTORY_DISCORD_NAMESPACE=org          the Hub namespace Discord users' models go to (required)
Quotas are the queue's: FACTORY_MAX_QUEUED_PER_SUBMITTER, FACTORY_MAX_JOBS_PER_DAY.
"""


def cmd_bot(args) -> int:
    if not (ROOT / "bot" / "discord_bot.py").is_file():
        raise UserError("`factory bot` runs from a checkout of the factory (bot/discord_bot.py is not here)")
    sys.path.insert(0, str(ROOT))
    import runpy

    return runpy.run_path(str(ROOT / "bot" / "discord_bot.py"), run_name="factory_bot")["main"]()


def add_command(sub) -> None:
    import argparse

    b = sub.add_parser("bot", help="the Discord bot: /finetune, /status, /jobs, /cancel, /chat",
                       epilog=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    b.set_defaults(fn=cmd_bot)
