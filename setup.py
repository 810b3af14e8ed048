# cffi_modules is a setup() keyword, so the build needs this stub; all
# metadata is in pyproject.toml.
from setuptools import setup

setup(cffi_modules=["native/build.py:ffi"])
