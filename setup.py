"""Ship the top-level rules/ folder inside the wheel as triage/rules.

The rules live at the top of the repository where operators read and edit them;
an installed wheel has no checkout beside it, so the build copies them in.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithRules(build_py):
    def run(self) -> None:
        super().run()
        source = Path(__file__).parent / "rules"
        target = Path(self.build_lib) / "triage" / "rules"
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)


setup(cmdclass={"build_py": BuildWithRules})
