#!/usr/bin/env bash
# A Python virtual environment for the black-box API suite and the SMTP sink.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=tests/.venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/requirements.txt
