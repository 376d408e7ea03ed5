"""Input pipelines: data sources that yield single examples, and one shared batching pipeline.

Sources (one module per kind of source; new formats go beside these):

- ``kapps.data.tfds``: TensorFlow Datasets (:func:`load_tfds`), with clear errors when the
  prepared data is missing or damaged.
- ``kapps.data.images``: class-per-folder images (:func:`image_folder`).
- ``kapps.data.mnist``: MNIST batches for the LeNet-5 recipe (:func:`mnist`).
- ``kapps.data.cifar10``: CIFAR-10 batches from TFDS or a local folder (:func:`cifar10`) and
  the ResNet paper's pad-crop-flip augmentation (:func:`random_crop_flip`).

- ``kapps.data.segmentation``: image+mask folders (:func:`mask_folder`), ISBI 2012
  (:func:`isbi2012`) and CamVid (:func:`camvid`), and augmentation applied identically to an
  image and its mask (:func:`segmentation_augmentation`, with the U-Net paper's
  :func:`elastic_deformation`).

- ``kapps.data.translation``: tab-separated sentence pairs (:func:`read_pairs`), the Tatoeba
  English-French pairs with a fixed held-out split (:func:`fra_eng`), Multi30k
  (:func:`multi30k`), a shared SentencePiece vocabulary (:func:`train_sentencepiece`,
  :func:`sentencepiece_tokenizer`) and batches of token ids (:func:`translation_dataset`).

- ``kapps.data.voc``: Pascal VOC folders (:func:`load_voc`: ``JPEGImages``, ``Annotations``,
  ``ImageSets/Main``; degenerate boxes dropped, boxes outside the image clipped, both counted
  and logged), TFDS ``voc/2007`` (:func:`voc_tfds`), and detection batches of images and
  padded ``rel_xyxy`` box targets (:func:`detection_dataset`) with augmentation that moves the
  boxes with the image (:func:`detection_augmentation`) and multi-scale batches.

- ``kapps.data.text``: English text for BERT: the English side of the shared corpora
  (:func:`english_corpus`: tiny Shakespeare passages, Multi30k, Tatoeba), a WordPiece
  vocabulary (:func:`wordpiece_vocabulary`, :func:`wordpiece_tokenizer`), masked-LM batches
  (:func:`masked_lm_dataset`), Tatoeba paraphrase pairs (:func:`paraphrase_pairs`) and
  sentence-pair batches (:func:`sentence_pair_dataset`).
- ``kapps.data.language_model``: plain text for language models: TFDS ``tiny_shakespeare``
  (:func:`tiny_shakespeare`), characters as keras-hub code points (:func:`char_tokenizer`),
  training windows at random offsets (:func:`random_windows`) and non-overlapping evaluation
  windows (:func:`tiled_windows`).

Pipeline: :func:`prepare` (map, cache, shuffle, batch, augment, prefetch) and
:func:`image_augmentation` (Keras preprocessing layers applied in ``tf.data``).

Example:
    >>> train = kapps.data.mnist("train", batch_size=256, data_dir="../shared/tfds")
    >>> ds, classes = kapps.data.image_folder("../shared/data/cifar10/train", 32, shuffle=True)
    >>> train = kapps.data.prepare(ds, 128, cache=True)
"""

from kapps.data.cifar10 import CIFAR10_CLASSES, cifar10, random_crop_flip
from kapps.data.errors import DatasetCorruptError, DatasetNotFoundError
from kapps.data.images import IMAGE_EXTENSIONS, image_folder, list_image_folder, load_image
from kapps.data.language_model import char_tokenizer, random_windows, tiled_windows, tiny_shakespeare
from kapps.data.mnist import mnist
from kapps.data.pipeline import AUTOTUNE, image_augmentation, prepare
from kapps.data.segmentation import (
    CAMVID_CLASSES,
    CAMVID_VOID,
    camvid,
    elastic_deformation,
    isbi2012,
    isbi2012_mask,
    list_mask_folder,
    mask_folder,
    segmentation_augmentation,
)
from kapps.data.text import (
    english_corpus,
    masked_lm_dataset,
    paraphrase_pairs,
    sentence_pair_dataset,
    wordpiece_tokenizer,
    wordpiece_vocabulary,
)
from kapps.data.tfds import load_tfds, tfds_data_dir
from kapps.data.translation import (
    END_ID,
    PAD_ID,
    SPECIAL_TOKENS,
    START_ID,
    UNK_ID,
    fra_eng,
    group_references,
    multi30k,
    read_pairs,
    sentencepiece_tokenizer,
    train_sentencepiece,
    translation_dataset,
)

from kapps.data.voc import (
    VOC_CLASSES,
    VOC_YEARS,
    VocStats,
    box_sizes,
    detection_augmentation,
    detection_dataset,
    load_voc,
    read_voc_annotation,
    voc_tfds,
)

__all__ = [
    "VOC_CLASSES",
    "VOC_YEARS",
    "VocStats",
    "box_sizes",
    "detection_augmentation",
    "detection_dataset",
    "load_voc",
    "read_voc_annotation",
    "voc_tfds",
    "AUTOTUNE",
    "END_ID",
    "PAD_ID",
    "SPECIAL_TOKENS",
    "START_ID",
    "UNK_ID",
    "fra_eng",
    "group_references",
    "multi30k",
    "read_pairs",
    "sentencepiece_tokenizer",
    "train_sentencepiece",
    "translation_dataset",
    "CAMVID_CLASSES",
    "CAMVID_VOID",
    "CIFAR10_CLASSES",
    "DatasetCorruptError",
    "DatasetNotFoundError",
    "camvid",
    "cifar10",
    "elastic_deformation",
    "IMAGE_EXTENSIONS",
    "image_augmentation",
    "image_folder",
    "isbi2012",
    "isbi2012_mask",
    "list_image_folder",
    "load_image",
    "list_mask_folder",
    "load_tfds",
    "mask_folder",
    "mnist",
    "char_tokenizer",
    "random_windows",
    "tiled_windows",
    "tiny_shakespeare",
    "english_corpus",
    "masked_lm_dataset",
    "paraphrase_pairs",
    "sentence_pair_dataset",
    "wordpiece_tokenizer",
    "wordpiece_vocabulary",
    "prepare",
    "random_crop_flip",
    "segmentation_augmentation",
    "tfds_data_dir",
]
