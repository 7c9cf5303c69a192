"""`factory space`: the Gradio app (spaces/app.py) on this machine; `factory space-folder`: what to upload."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from factory.base.errors import UserError

ROOT = Path(__file__).resolve().parents[2]  # the checkout: factory/cli/ -> ./
APP = ROOT / "spaces" / "app.py"

HELP = """\
Locally (no Hugging Face sign-in: you are FACTORY_SPACE_USER, or your login name):
  factory space --worker          the app on http://127.0.0.1:7860 with a worker in the same process,
                                  over the embedded default (local hub, SQLite queue)
As a Hugging Face Space:
  factory space-folder out/       writes the folder to upload (app, card with the Space metadata,
                                  requirements, the factory's code); then `hf upload USER/SPACE out/ --repo-type space`
  Space secrets: FACTORY_DB_URL (the shared PostgreSQL queue that GPU workers poll),
  FACTORY_SECRET_KEY (seals users' sign-in tokens), optionally FACTORY_OPERATORS, FACTORY_REMOTE_LIMITS.
"""


def _app_module() -> dict:
    if not APP.is_file():
        raise UserError(f"{APP} is not here: `factory space` runs from a checkout of the factory (spaces/app.py)")
    import runpy

    return runpy.run_path(str(APP), run_name="factory_space")


def cmd_space(args) -> int:
    app = _app_module()
    print(f"model factory space on http://{args.host}:{args.port}" + (" with a worker" if args.worker else ""),
          file=sys.stderr)
    app["launch"](host=args.host, port=args.port, worker=args.worker, block=True)
    return 0


def dependencies() -> list[str]:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [*project["dependencies"], "gradio[oauth]>=6,<7", "pandas", "ruamel.yaml>=0.18", "psycopg[binary]>=3.1"]


def cmd_space_folder(args) -> int:
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out} exists and is not empty; give a new folder")
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy2(APP, out / "app.py")
    shutil.copy2(ROOT / "spaces" / "README.md", out / "README.md")
    for package in ("factory", "evals"):
        shutil.copytree(ROOT / package, out / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (out / "requirements.txt").write_text("\n".join(dependencies()) + "\n")
    print(f"wrote {out}: app.py, README.md (Space metadata), requirements.txt, factory/, evals/")
    return 0


def add_commands(sub) -> None:
    import argparse

    s = sub.add_parser("space", help="the web app: submit, watch, results, chat (add --worker to run jobs too)",
                       epilog=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=7860)
    s.add_argument("--worker", action="store_true", help="run queued jobs in this process too")
    s.set_defaults(fn=cmd_space)
    f = sub.add_parser("space-folder", help="write the folder to upload as a Hugging Face Space",
                       epilog=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    f.add_argument("out", help="a new folder")
    f.set_defaults(fn=cmd_space_folder)
