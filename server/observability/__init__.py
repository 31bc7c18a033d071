"""What operators measure: `GET /metrics` and the publish-to-delivery delay."""
