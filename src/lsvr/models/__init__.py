"""Models: the paper's AlexNet, torchvision's layout, a small variant; `registry` names them."""
