"""LightningDataModules over real formats, and a synthetic default that needs no data."""

from datamodules.cifar import CIFAR10, CIFAR100
from datamodules.ecg import MITBIH, CinC2017
from datamodules.image_classification import ImageClassificationDataModule, ImageList
from datamodules.medmnist import MedMNIST
from datamodules.multimodal import MITBIHDemographics, Multimodal, SyntheticLesionRecords, TableColumns
from datamodules.registration import PairedImages, SyntheticDeformations
from datamodules.segmentation import (
    DecathlonSegmentation,
    SegmentationFolders,
    SegmentationList,
    SyntheticSegmentation,
)
from datamodules.sequences import SyntheticSequences
from datamodules.synthetic import SyntheticLesions
from datamodules.volumes import MedMNIST3D, SyntheticVolumes

__all__ = [
    "CIFAR10",
    "CIFAR100",
    "CinC2017",
    "DecathlonSegmentation",
    "ImageClassificationDataModule",
    "ImageList",
    "MedMNIST",
    "MedMNIST3D",
    "MITBIH",
    "MITBIHDemographics",
    "Multimodal",
    "PairedImages",
    "SegmentationFolders",
    "SegmentationList",
    "SyntheticDeformations",
    "SyntheticLesionRecords",
    "SyntheticLesions",
    "SyntheticSegmentation",
    "SyntheticSequences",
    "SyntheticVolumes",
    "TableColumns",
]
