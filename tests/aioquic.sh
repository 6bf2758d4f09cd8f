#!/usr/bin/env bash
# A client written by others, for the HTTP/3 interoperability test: aioquic's HTTP/3 client
# (examples/http3_client.py from aioquic's source distribution, run in a virtualenv with aioquic
# and wsproto from PyPI). Installs into target/interop/aioquic; does nothing when it is there.
set -euo pipefail
cd "$(dirname "$0")/.."

AIOQUIC_VERSION=1.7.2
dir=target/interop/aioquic
if [ -x "$dir/venv/bin/python" ] && [ -f "$dir/http3_client.py" ]; then
    exit 0
fi
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    apt-get update && apt-get install -y python3-venv
fi
mkdir -p "$dir"
python3 -m venv "$dir/venv"
"$dir/venv/bin/pip" install --quiet --disable-pip-version-check \
    "aioquic==$AIOQUIC_VERSION" "wsproto>=1.2"
# The example client ships in the source distribution only.
"$dir/venv/bin/pip" download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
    -d "$dir/sdist" "aioquic==$AIOQUIC_VERSION"
tar -xzf "$dir/sdist/aioquic-$AIOQUIC_VERSION.tar.gz" -C "$dir" \
    "aioquic-$AIOQUIC_VERSION/examples/http3_client.py"
mv "$dir/aioquic-$AIOQUIC_VERSION/examples/http3_client.py" "$dir/http3_client.py"
rm -rf "$dir/aioquic-$AIOQUIC_VERSION" "$dir/sdist"
"$dir/venv/bin/python" "$dir/http3_client.py" --help >/dev/null
echo "aioquic $AIOQUIC_VERSION's HTTP/3 client is in $dir"
