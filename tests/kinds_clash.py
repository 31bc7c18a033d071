"""A second kind named `demo`, for the registry's clash test."""

from __future__ import annotations

import dataclasses

from jobcast.jobs.kinds import demo

DEMO_AGAIN = dataclasses.replace(demo.KIND, title="Another demo")
