"""Every Ray process of these tests listens on the loopback interface only.

Ray reads ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` when it is imported: set after ``import ray``, a node started
in this process advertises the machine's own address and a driver waits for it forever. Set here, at
collection, before any test imports Ray; the nodes and driver subprocesses inherit it."""

import os

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
