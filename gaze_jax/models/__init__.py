"""Model stage: the ResNet-18 gaze regressor, its CPU lowerings, torchvision weight import."""
