//! The embedded MQTT broker for the demo and small sites (rumqttd, kept in a leaf crate).
