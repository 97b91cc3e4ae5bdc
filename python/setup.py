"""Builds heed._heed with the repository's CMake for the running interpreter.

`pip install --no-build-isolation ./python` (docs/python.md) runs this: CMake configures the
repository with HEED_BUILD_PYTHON=ON (library and module only: no tests, benchmarks or
examples) in the build_temp directory (kept between installs, so a second install only
rebuilds what changed), builds the target heed_python and copies the module into the wheel.
Environment: HEED_CMAKE_ARGS (extra configure arguments, e.g. "-DHEED_FEW_HEAD_DIMS=ON" for a
faster build), HEED_JOBS (parallel jobs, default 2).
"""

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        if not (ROOT / "CMakeLists.txt").exists() or not (ROOT / "include" / "heed").is_dir():
            raise RuntimeError(f"heed's sources are not at {ROOT}: build from the repository")
        build_dir = Path(self.build_temp).resolve() / "cmake"
        build_dir.mkdir(parents=True, exist_ok=True)
        gen = ["-G", "Ninja"] if shutil.which("ninja") and not (build_dir / "CMakeCache.txt").exists() else []
        configure = ["cmake", "-S", str(ROOT), "-B", str(build_dir), *gen,
                     "-DCMAKE_BUILD_TYPE=Release", "-DHEED_BUILD_PYTHON=ON",
                     "-DHEED_BUILD_TESTS=OFF", "-DHEED_BUILD_BENCHMARKS=OFF",
                     "-DHEED_BUILD_EXAMPLES=OFF", "-DHEED_INSTALL=OFF",
                     f"-DPython_EXECUTABLE={sys.executable}",
                     *shlex.split(os.environ.get("HEED_CMAKE_ARGS", ""))]
        subprocess.run(configure, check=True)
        subprocess.run(["cmake", "--build", str(build_dir), "--target", "heed_python", "-j",
                        os.environ.get("HEED_JOBS", "2")], check=True)
        built = list((build_dir / "python" / "heed").glob("_heed*" + Path(self.get_ext_filename("x")).suffix))
        if len(built) != 1:
            raise RuntimeError(f"expected one heed._heed module in {build_dir}, found {built}")
        dest = Path(self.get_ext_fullpath(ext.name))
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(built[0], dest)


setup(ext_modules=[Extension("heed._heed", sources=[])], cmdclass={"build_ext": CMakeBuild})
