# Sourced by the GPU scripts (run from the repository root): on an offline machine, installs the
# wheels of missing packages in .whl/ into /tmp/site (once per machine), and puts this checkout
# and /tmp/site on PYTHONPATH, so camfields runs without being installed.
if [ -d .whl ] && [ ! -d /tmp/site ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl >/tmp/install.log 2>&1
fi
export PYTHONPATH="$PWD:/tmp/site:${PYTHONPATH:-}"
