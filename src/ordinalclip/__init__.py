"""ordinalclip: language-guided ordinal regression (OrdinalCLIP, Li et al., NeurIPS 2022)."""

__version__ = "0.1.0"
