"""Data: raw sources, offline preparation, the prepared format, the loader, augmentation."""
