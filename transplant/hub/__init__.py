"""Publishing to the Hugging Face Hub: what a folder is, its model card, and the upload."""
