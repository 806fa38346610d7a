#!/usr/bin/env bash
# Install the workflow's own package (workflow/unetseg) into the freshly made conda env.
set -euo pipefail
pip install --no-deps -e "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
