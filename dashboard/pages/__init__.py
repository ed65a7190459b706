"""One module per page (Dash pages)."""
