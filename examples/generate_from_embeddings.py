"""Generate stimulus-world images from embeddings with the shipped diffusion pipeline.

A decoder predicts two embeddings per brain sample, the ``stimnet`` image embedding and the
``stimtext`` caption embedding; here the TRUE embeddings of a few new images stand in for
them (the generator's upper bound). Draws 3 samples per embedding, keeps one by agreement
with the (predicted) image embedding, never by looking at the true image, and scores the
result with the independent evaluation network.

Run: ``.venv/bin/python examples/generate_from_embeddings.py`` (about 20 s on 2 cores);
writes ``generate_from_embeddings.png``.
"""

import matplotlib.pyplot as plt

from data_loaders.simulate.stimuli import render_stimuli
from decoding.evaluation.image_eval import reconstruction_metrics
from decoding.features import get_extractor
from decoding.generation import default_pipeline, select_samples
from decoding.semantics import captions_from_attributes, get_text_encoder

stim = render_stimuli(16, image_size=64, random_state=2024)
captions = captions_from_attributes(stim)
fx, tx = get_extractor("stimnet"), get_text_encoder("stimtext")  # shipped weights
image_embeds, text_embeds = fx.transform(stim.images), tx.encode(captions)

pipe = default_pipeline()
print(pipe.image_embedding_id, pipe.text_embedding_id)  # what it was conditioned on
samples = pipe(image_embeds, text_embeds, num_inference_steps=20, guidance_scale=3.0,
               generator=0, num_images_per_prompt=3).images  # (16 * 3, 64, 64, 3) in [0, 1]
chosen = select_samples(samples, image_embeds, extractor=fx)  # brain-derived choice only
m = reconstruction_metrics(chosen.images, stim.images, stim.attributes)
print({k: round(v, 3) for k, v in m.items()})

fig, axes = plt.subplots(2, 8, figsize=(12, 3.4))
for i in range(8):
    axes[0, i].imshow(stim.images[i])
    axes[0, i].set_title(captions[i].replace(", and", ",\nand"), fontsize=5)
    axes[1, i].imshow(chosen.images[i])
for ax in axes.ravel():
    ax.axis("off")
fig.tight_layout()
fig.savefig("generate_from_embeddings.png", dpi=120)
