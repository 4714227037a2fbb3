//! The demo-nation simulator: cities, devices and their daily patterns.
