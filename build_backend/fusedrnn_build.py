"""fusedrnn's build backend: setuptools' own, built against the torch of the environment installed into.

fusedrnn's extension is compiled against torch's headers and libraries and loads only under the torch it
was built against. pip's default build isolation builds in a temporary environment with whatever torch
the package index offers, which need not be the torch the user runs. So each hook first looks for torch
in the site-packages of the interpreter that runs it (under pip's isolation that is the interpreter of the
environment being installed into; pip only hides its site-packages): found, it is made importable here
(after the isolated environment's own packages) and the build uses it; not found (a fresh environment),
the build asks for torch as a build requirement. Either way setup.py pins the wheel to the torch version
it was built against, so pip installs that one beside it.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import site
import sys
import sysconfig

from setuptools import build_meta as _setuptools


def installed_sites() -> list[str]:
    """Where the interpreter running the build installs packages: its site-packages and the user's."""
    paths = sysconfig.get_paths()
    candidates = [paths["purelib"], paths["platlib"], site.getusersitepackages()]
    return list(dict.fromkeys(candidates))


def use_installed_torch(sites: list[str] | None = None) -> bool:
    """Makes torch importable in this process from the sites given (default installed_sites()) unless it
    already is. False when there is no torch anywhere."""
    if importlib.util.find_spec("torch") is not None:
        return True
    for path in sites if sites is not None else installed_sites():
        if importlib.machinery.PathFinder.find_spec("torch", [path]) is not None:
            sys.path.append(path)  # after the isolated environment's setuptools and wheel
            importlib.invalidate_caches()
            return True
    return False


def _requires(base_hook):
    def get_requires(config_settings=None):
        if not use_installed_torch():
            return ["torch"]  # setup.py imports torch: build against the one pip installs for the build
        return base_hook(config_settings)
    return get_requires


def _with_installed_torch(hook):
    def run(*args, **kwargs):
        use_installed_torch()
        return hook(*args, **kwargs)
    return run


# Each hook runs in a process of its own: each looks for the installed torch first.
get_requires_for_build_wheel = _requires(_setuptools.get_requires_for_build_wheel)
get_requires_for_build_editable = _requires(_setuptools.get_requires_for_build_editable)
get_requires_for_build_sdist = _requires(_setuptools.get_requires_for_build_sdist)
prepare_metadata_for_build_wheel = _with_installed_torch(_setuptools.prepare_metadata_for_build_wheel)
prepare_metadata_for_build_editable = _with_installed_torch(_setuptools.prepare_metadata_for_build_editable)
build_wheel = _with_installed_torch(_setuptools.build_wheel)
build_editable = _with_installed_torch(_setuptools.build_editable)
build_sdist = _with_installed_torch(_setuptools.build_sdist)
