"""The one thing pyproject.toml cannot say: the C firmware (top-level firmware/, edited and built
there in a checkout) also ships inside the package, as fusegen/_firmware, so that `fusegen bench`
and `fusegen compare` of a non-editable install can build it (fusegen.paths.FIRMWARE)."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["fusegen", "fusegen.*"]), "fusegen._firmware"],
    package_dir={"fusegen._firmware": "firmware"},
    package_data={
        "fusegen": ["templates/*.j2", "tflm_kernels/**/*", "compare/c/*.c"],
        "fusegen._firmware": ["**/*"],
    },
)
