"""keras_sphereface.layers."""
