"""The lakehouse tables as Airflow Assets: a DAG that writes one emits it, the next DAG runs.

Data flows one way: events topic → Bronze → Silver → Gold (hourly rollups, CTR training set)
→ ClickHouse facts and the CTR model → the serving artifact. The events topic's events come
from the triggerer, which watches the topic's backlog (adplatform.orchestration.triggers).
"""

from airflow.sdk import Asset, AssetWatcher

from adplatform.orchestration.triggers import TopicBacklogTrigger

EVENTS_TOPIC = Asset(
    name="ad_events_topic",
    uri="topic://ad_events",
    group="lakehouse",
    watchers=[AssetWatcher(name="ad_events_backlog", trigger=TopicBacklogTrigger())],
)
BRONZE = Asset(name="bronze_ad_events", uri="lakehouse://bronze/ad_events", group="lakehouse")
QUARANTINE = Asset(
    name="quarantine_ad_events", uri="lakehouse://quarantine/ad_events", group="lakehouse"
)
SILVER = Asset(name="silver_ad_events", uri="lakehouse://silver/ad_events", group="lakehouse")
GOLD_HOURLY = Asset(
    name="gold_hourly_performance", uri="lakehouse://gold/hourly_performance", group="lakehouse"
)
GOLD_CTR_TRAINING = Asset(
    name="gold_ctr_training", uri="lakehouse://gold/ctr_training", group="lakehouse"
)
CLICKHOUSE_FACTS = Asset(
    name="clickhouse_hourly_performance",
    uri="clickhouse://adplatform/hourly_performance",
    group="reporting",
)
CTR_CHAMPION = Asset(name="ctr_model_champion", uri="serving://ctr_model/champion", group="ml")
