"""The REST client's own errors: what a user sees when Airflow is not there."""

import pytest

from adplatform.airflow_client import AirflowApiError, AirflowClient
from tests.conftest import free_port


def test_an_absent_server_is_one_error_naming_its_url_and_the_fix():
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    client = AirflowClient(url, "admin", "unused")
    with pytest.raises(AirflowApiError) as refused:
        client.dags.get_dags()
    message = str(refused.value)
    assert message.startswith(f"Airflow at {url} did not answer (")
    assert "Connection refused" in message and "`make up`" in message
    client.close()
