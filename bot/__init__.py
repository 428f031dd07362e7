"""Proofroom bot: everything that talks to people. Never imports torch or diffusers."""
