"""keras_sphereface.models."""
