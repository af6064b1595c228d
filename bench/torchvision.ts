/** torchvision's ImageNet normalisation in pixel units (mean and std x 255): the card of a zoo .onnx. */
export const TORCHVISION = { mean: [123.675, 116.28, 103.53], std: [58.395, 57.12, 57.375] };
