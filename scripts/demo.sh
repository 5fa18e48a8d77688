#!/usr/bin/env bash
# Quick start, part 1: install what is missing, build the release preset, and run the
# main job: `smtpbulk load` sending 100,000 messages over 8 connections to its built-in
# sink. Arguments go to `smtpbulk load` (e.g. a HOST[:PORT] to target a real server).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release --target smtpbulk_cli >/dev/null
exec ./build/release/smtpbulk load -m 100000 -s 8 "$@"
