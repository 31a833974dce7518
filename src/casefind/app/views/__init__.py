"""The app's pages and actions, one module per area; ``common`` holds the access checks."""
