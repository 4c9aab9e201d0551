"""The time windows that decide which events count and which hours depend on which."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

from adplatform.events.schema import EventType
from adplatform.lakehouse.partitions import HOUR
from adplatform.settings import Settings

# What attribution reads from the hours before the ones it builds: clicks find their impression,
# conversions their click.
LOOKBACK_EVENT_TYPES = (EventType.IMPRESSION, EventType.CLICK)


@dataclass(frozen=True)
class Windows:
    late: timedelta  # a partition accepts events ingested this long after its first one
    click: timedelta  # impression → click
    conversion: timedelta  # click → conversion

    @classmethod
    def from_settings(cls, settings: Settings) -> Windows:
        return cls(
            late=timedelta(minutes=settings.transform_late_window_minutes),
            click=timedelta(minutes=settings.transform_click_window_minutes),
            conversion=timedelta(hours=settings.transform_conversion_window_hours),
        )

    @property
    def lookback_hours(self) -> int:
        """How many hours before an event its attribution may reach: a conversion's click, and
        that click's impression. Silver hour H depends on Bronze hours H-lookback .. H."""
        return math.ceil((self.click + self.conversion) / HOUR)

    @property
    def click_hours(self) -> int:
        return math.ceil(self.click / HOUR)
