"""keras_sphereface.evaluation."""
