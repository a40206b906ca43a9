"""Training jobs a shop runs after new history or items arrive (`aisle train ...`).

- `agent.train.models`: the catalog's recommender models (co-occurrence, SASRec, the text-aware
  sequential model, the learned ranker).
- `agent.train.lora`: supervised LoRA fine-tuning of the engine's LLM (checkpoints, resume,
  adapter metadata), shared by the LLM ranker (`agent.train.ranker`) and the copywriter.
"""
