"""Kafka → Bronze ingest, exactly once, with a quarantine for bad events.

``worker`` runs the consumer group member, ``commitlog`` is the durable record that makes it
exactly once, ``batch`` turns validated messages into Parquet files, ``replay`` re-ingests
committed ranges, ``status`` reports lag and counts, ``tasks`` is what the Airflow DAG calls.
"""
