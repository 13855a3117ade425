"""Modules other projects place from their YAMLs that this project does not provide: their names fail as such
(with the closest module here, where there is one), not as typos."""

from __future__ import annotations

from models.dialects.names import FOREIGN
from models.dialects.readings import EAP, ODS, YOLOAIR

# ----------------------------------------------------------------------------------------------------------------------
# Known modules of other projects that are not provided here (their names fail as such, not as typos)

_ATTENTION_NOT_PROVIDED = (
    ("AxialImageTransformer", f"{YOLOAIR}/{EAP}", "axial-attention transformer", "CrissCross (attention along each row "
     "and column)"),
    ("AxialAttention", EAP, "axial attention", "CrissCross (attention along each row and column)"),
    ("MHSA", f"{YOLOAIR}/{ODS}", "BoTNet MHSA with absolute position tables of one fixed size, or none",
     "BoTMHSA (relative positions, any size)"),
    ("DAModule", EAP, "DANet fixed to d_model 512 and 7x7 maps", "DANet"),
    ("CoTAttention", f"{EAP}/{ODS}", "a global-softmax gate, not the official CotLayer", "CoT"),
    ("EfficientAttention", ODS, "CloFormer's CloAttention (H, W divisible by its window)", ""),
    ("MobileViTAttention", f"{EAP}/{ODS}", "MobileViT block (patch-size divisibility)", ""),
    ("MobileViTv2Attention", EAP, "MobileViTv2 separable attention on tokens", ""),
    ("AFT_FULL", EAP, "attention-free transformer on tokens with a fixed N", ""),
    ("OutlookAttention", EAP, "VOLO outlook attention on tokens", ""),
    ("WeightedPermuteMLP", EAP, "Vision Permutator MLP with fixed H and W", ""),
    ("HaloAttention", EAP, "HaloNet blocked local attention", ""),
    ("EMSA", EAP, "ResT efficient multi-head self-attention on tokens", ""),
    ("MUSEAttention", EAP, "multi-scale self-attention on tokens", ""),
    ("UFOAttention", EAP, "UFO-ViT linear attention on tokens", ""),
    ("ScaledDotProductAttention", EAP, "token self-attention", "BoTMHSA"),
    ("SimplifiedScaledDotProductAttention", EAP, "token self-attention", "BoTMHSA"),
    ("GlobalFilter", EAP, "GFNet FFT filter of a fixed size", ""),
    ("CoAtNet", EAP, "a whole network", ""),
    ("CrossFormer", EAP, "a whole network", ""),
    ("MOATransformer", EAP, "a whole network", ""),
)
for name, source, what, instead in _ATTENTION_NOT_PROVIDED:
    FOREIGN.known(name, source, what, instead)

# Names YOLOAir's parse_model places (iscyy/yoloair models/yolo.py) or its YAMLs use, and that are not here.
YOLOAIR_NOT_PROVIDED = (
    "ADD ASFF_Detect ASPP BasicRFB BepC3 BoT3 BottleneckCSP2 BottleneckCSPB BottleneckCSPC BottleneckCSPF C2f_RMB "
    "C3C2 C3GC C3HB C3RFEM C3STR C3_RMB CARAFE CBH CNeB CPNRMB CSPResNet CSPResNet_CBS CSRMBC CoT3 Concat_bifpn "
    "ConvBNLayer ConvNeXt ConvNextBlock Conv_maxpool CoordConv DWConvblock DWT Decoupled_Detect "
    "Dense Densenet121 Densenet169 Densenet201 DepthSepConv DetectX DetectYoloX DySample ES_Bottleneck ETVR "
    "EffDecHead Efficient1 Efficient2 Efficient3 GSConv HorBlock HorNet Involution LC_Block "
    "MobileNet1 MobileNet2 MobileNet3 MobileNetV3_InvertedResidual MobileOne MobileOneBlock PPConvBlock RTRM "
    "ReNLANRMB RegNet1 RegNet2 RegNet3 RepBlock RepLKNet_Stem RepLKNet_stage1 RepLKNet_stage2 RepLKNet_stage3 "
    "RepLKNet_stage4 RepVGGBlock RepVGGBlockv6 Res2net50 ResCSPB ResCSPC ResNet101vd ResNet50vd ResNet50vd_dcn ResSPP "
    "ResXCSPB ResXCSPC SPPCSP SPPCSPC_group SPPFCSPC ShuffleNetV2_Model Shuffle_Block SimConv SimSPPF Stem "
    "SwinV2_CSPB Swin_Transformer_A Swin_v2_A VoVGSCSP WaveLAN XCRS conv_bn_hswish conv_bn_relu_maxpool gnconv "
    "mobilev3_bneck space_to_depth stem"
).split()
# Names YOLOv7's parse_model places (WongKinYiu/yolov7 models/yolo.py) that are not here.
YOLOV7_NOT_PROVIDED = (
    "BottleneckCSPA BottleneckCSPB BottleneckCSPC Chuncat Foldcut Ghost GhostCSPA "
    "GhostCSPB GhostCSPC GhostSPPCSPC GhostStem IBin IKeypoint RepBottleneck "
    "RepBottleneckCSPA RepBottleneckCSPB RepBottleneckCSPC RepConv_OREPA RepRes RepResCSPA RepResCSPB RepResCSPC "
    "RepResX RepResXCSPA RepResXCSPB RepResXCSPC Res ResCSPA ResCSPB ResCSPC ResX ResXCSPA ResXCSPB ResXCSPC "
    "RobustConv RobustConv2 ST2CSPA ST2CSPB ST2CSPC STCSPA STCSPB STCSPC Stem SwinTransformer2Block "
    "SwinTransformerBlock nn.Conv2d"
).split()
for name in YOLOV7_NOT_PROVIDED:
    FOREIGN.known(name, "YOLOv7")
for name in YOLOAIR_NOT_PROVIDED:
    FOREIGN.known(name, YOLOAIR)
