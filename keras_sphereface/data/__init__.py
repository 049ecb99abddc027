"""keras_sphereface.data."""
