"""`xeonft env`: the library environments that the matrix axis `env` names (envs/NAME.txt)."""

from __future__ import annotations

import argparse

from harness.commands.base import Command


class Env(Command):
    name = "env"
    help = "library environments for the matrix axis `env`"

    @classmethod
    def setup_arguments(cls, parser: argparse.ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="env_verb", required=True)
        sub.add_parser("create", help="build the venv for envs/NAME.txt").add_argument("name")
        sub.add_parser("list", help="requirement files and the environments already created")

    @classmethod
    def run(cls, args: argparse.Namespace) -> int:
        from harness.launch import envs

        if args.env_verb == "create":
            print(envs.create(args.name))
        else:
            made = set(envs.created())
            for name in envs.available():
                print(f"{name:16} {'created: ' + str(envs.env_dir(name)) if name in made else 'not created'}")
        return 0
