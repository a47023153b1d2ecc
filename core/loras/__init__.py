"""LoRA files as other tools write and read them: kohya/A1111 export, community LoRA import."""
