"""Dataset loaders (MedMNIST, MNIST, image folders), transforms, few-shot subsets and embedded data."""
