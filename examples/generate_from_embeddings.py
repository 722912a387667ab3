"""Generate stimulus-world images from embeddings with the shipped diffusion pipeline.

A decoder predicts two embeddings per brain sample, the ``stimnet`` image embedding and the
``stimtext`` caption embedding; here the TRUE embeddings of a few new images stand in for
them (the generator's upper bound). ``pipe.encode_conditioning`` is the one call that turns
images (and their captions) into the pipeline's conditioning. Draws 3 samples per
embedding, keeps one by agreement with the (predicted) image embedding, never by looking at
the true image, scores the result with the referee (the independent evaluation network),
and writes the arrays to a ``reconstructions.npz`` that ``load_reconstructions`` reads back.

Run: ``.venv/bin/python examples/generate_from_embeddings.py`` (about 20 s on 2 cores);
writes ``generate_from_embeddings.png`` and ``generate_from_embeddings.npz``.
"""

import matplotlib.pyplot as plt

from data_loaders.simulate.stimuli import COLOUR_NAMES, SHAPE_CLASSES, render_stimuli
from decoding.evaluation import load_reconstructions, save_reconstructions
from decoding.evaluation.image_eval import get_evaluator, reconstruction_metrics
from decoding.features import get_extractor
from decoding.generation import default_pipeline, select_samples
from decoding.semantics import captions_from_attributes

stim = render_stimuli(16, image_size=64, random_state=2024)
captions = captions_from_attributes(stim)

pipe = default_pipeline()
cond = pipe.encode_conditioning(stim)  # stimnet + stimtext embeddings, identifiers checked
print(cond.image_embedding_id, cond.text_embedding_id, cond.image_embeds.shape)
samples = pipe(cond, num_inference_steps=20, guidance_scale=3.0, generator=0,
               num_images_per_prompt=3).images  # (16 * 3, 64, 64, 3) in [0, 1]
chosen = select_samples(samples, cond.image_embeds, extractor=get_extractor("stimnet"))
m = reconstruction_metrics(chosen.images, stim.images, stim.attributes)
print({k: round(v, 3) for k, v in m.items()})  # shape / colour read by the referee

save_reconstructions("generate_from_embeddings.npz", stim.images, stim.ids,
                     {"generated": samples[::3], "selected": chosen.images,
                      "layout": pipe.layout_images(cond)})
rec = load_reconstructions("generate_from_embeddings.npz")
print(rec.rows, rec["selected"].shape, rec["selected"].dtype)

read = get_evaluator().predict_attributes(rec["selected"])
fig, axes = plt.subplots(2, 8, figsize=(12, 3.6))
for i in range(8):
    axes[0, i].imshow(stim.images[i])
    axes[0, i].set_title(captions[i].replace(", and", ",\nand"), fontsize=5)
    axes[1, i].imshow(rec["selected"][i])
    axes[1, i].set_title(f"read: {COLOUR_NAMES[read['colour'][i]]} "
                         f"{SHAPE_CLASSES[read['shape'][i]]}", fontsize=6)
for ax in axes.ravel():
    ax.axis("off")
fig.tight_layout()
fig.savefig("generate_from_embeddings.png", dpi=120)
