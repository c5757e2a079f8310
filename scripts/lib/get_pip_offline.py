"""ansible-test's pip bootstrap, without downloading get-pip.py.

`ansible-test sanity --venv` bootstraps pip into each empty venv it makes with get-pip.py from
ci-files.testing.ansible.com, which these machines cannot reach; it first looks for the script in
~/.ansible/test/cache/get_pip_<version>.py, where scripts/lib/ecosystem.sh puts this one. Like
get-pip.py it is run with pip's install arguments: Python's own ensurepip provides a pip, which
then installs what ansible-test asked for (pinned pip and friends) from PyPI.
"""
import subprocess
import sys

ARGS = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
subprocess.run([sys.executable, "-m", "ensurepip", "--default-pip"], check=True, stdout=subprocess.DEVNULL)
sys.exit(subprocess.run([sys.executable, "-m", "pip", "install", *ARGS], check=False).returncode)
