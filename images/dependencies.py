"""Print the pinned requirements of the project and of the named extras, one per line.

    python3 dependencies.py PYPROJECT EXTRA[,EXTRA...]

The notebook image installs them before it copies the code, so that the layer of its
dependencies is built again only when pyproject.toml changes, not with each change of the code.
"""

import sys
import tomllib
from pathlib import Path


def requirements(pyproject: Path, extras: list[str]) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    found = list(project["dependencies"])
    for extra in extras:
        found += project["optional-dependencies"][extra]
    return sorted(set(found))


if __name__ == "__main__":
    print("\n".join(requirements(Path(sys.argv[1]), sys.argv[2].split(","))))
