"""What jobcast is measured against, each the least code that runs it on the same workload."""
