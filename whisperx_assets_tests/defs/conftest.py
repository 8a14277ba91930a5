import pytest
from dagster import DagsterInstance


@pytest.fixture
def instance():
    """An ephemeral Dagster instance (in memory) for one test."""
    with DagsterInstance.ephemeral() as instance:
        yield instance
