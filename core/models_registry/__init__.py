"""The model manager: installed base models and every LoRA, with family, format, precision, size and source."""
