#!/usr/bin/env bash
# Runs each fuzz target for SECONDS (default 30), seeded with the frames
# captured from RabbitMQ. Usage: fuzz/run.sh [SECONDS] [TARGET...]
# Installs cargo-fuzz when it is missing. The toolchain is stable, and
# cargo fuzz passes nightly flags, hence RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-30}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(frame_decode field_table_decode)

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1

mkdir -p corpus/frame_decode corpus/field_table_decode
cp ../amqp-wire/tests/data/*.bin corpus/frame_decode/
# Seed the table target with the header table of the captured delivery
# (the properties start after 7 + 12 bytes of frame and header fields,
# 2 flags and content-type/encoding short strings).
python3 - <<'PY'
data = open("../amqp-wire/tests/data/deliver_with_headers.bin", "rb").read()
start = 61 + 7 + 12 + 2
i = start
for _ in range(2):          # content-type, content-encoding
    i += 1 + data[i]
length = int.from_bytes(data[i:i + 4], "big")
open("corpus/field_table_decode/captured_headers.bin", "wb").write(data[i:i + 4 + length])
PY

cargo fuzz build
for target in "${targets[@]}"; do
  echo "== fuzz $target for ${seconds}s"
  cargo fuzz run "$target" -- -max_total_time="$seconds" -print_final_stats=1 2>&1 \
    | grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|Done|==|SUMMARY|INFO: -max_total_time)|panicked|ERROR" || true
  # cargo fuzz exits non-zero on a finding; grep above hides the code, so check artifacts.
  if compgen -G "artifacts/$target/*" >/dev/null; then
    echo "fuzz target $target found a crash: see fuzz/artifacts/$target" >&2
    exit 1
  fi
done
