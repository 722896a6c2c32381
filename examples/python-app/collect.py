"""A collectstatic-style predeploy step: assets/ copied into staticfiles/ (kept in the release)."""

import shutil
from pathlib import Path

import flask  # the venv's packages: this runs with the release's python on PATH

shutil.copytree("assets", "staticfiles", dirs_exist_ok=True)
print(f"python-app: collected {len(list(Path('staticfiles').iterdir()))} file(s), "
      f"flask {flask.__version__}")
