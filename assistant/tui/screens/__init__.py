"""The UI's screens: chat, and the modal ones it opens."""
