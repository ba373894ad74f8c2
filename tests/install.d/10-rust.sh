#!/usr/bin/env bash
# Rust targets and cargo tools the tests use.
set -euo pipefail
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
rustup component add rustfmt clippy >/dev/null
rustup target add wasm32-unknown-unknown wasm32-wasip2 >/dev/null
command -v cargo-nextest >/dev/null || cargo install cargo-nextest --locked
