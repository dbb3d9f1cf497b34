"""meddata.trainers: the TRL backend (SFT, continued pretraining, DPO, evaluation)."""
