"""Training runners over trl/peft: `sft` (SFTTrainer + LoRA/QLoRA, recipe YAML) and `export` (merge/keep)."""
