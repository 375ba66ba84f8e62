"""Install the `failover` command and the agents (lhcd, socketserver, rhcd, socketserver2)."""

from setuptools import find_packages, setup

setup(
    name="failover",
    version="0.1.0",
    description="Two-host failover for a service that runs on one host at a time (POP3 first)",
    python_requires=">=3.11",
    packages=find_packages(include=["failover", "failover.*", "agents", "agents.*"]),
    package_data={"failover.units": ["*.in"]},  # the systemd unit templates (failover install-units)
    install_requires=["click>=8.1", "psutil>=5.9", "paramiko>=3.4"],
    extras_require={
        # linters pinned: a new release must not turn CI red on its own
        "test": ["pytest>=8", "hypothesis>=6.100", "ruff==0.17.6", "mypy==2.4.1", "types-psutil", "types-paramiko"],
    },
    entry_points={"console_scripts": ["failover = failover.cli:main"]},
)
