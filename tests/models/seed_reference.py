"""A literal transcription of the seed's ``masked_gat_after_resnet.py`` model, as the reference.

Only two things differ from the seed: the mask is passed in (the seed read
``coco_correlations.pkl`` from the working directory) and is not moved with ``.cuda()``, and the
head's input width is a parameter (the seed fixed 2048, ResNet-101's).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SeedBGATLayer(nn.Module):
    def __init__(self, in_features, out_features, dropout, alpha, mask):
        super().__init__()
        self.dropout = dropout
        self.in_features = in_features
        self.out_features = out_features
        self.alpha = alpha
        self.W = nn.Parameter(torch.zeros(in_features, out_features))
        nn.init.xavier_uniform_(self.W.data, gain=1.414)
        self.a = nn.Parameter(torch.zeros(2 * out_features, 1))
        nn.init.xavier_uniform_(self.a.data, gain=1.414)
        self.leakyrelu = nn.LeakyReLU(self.alpha)
        self.beta = nn.Parameter(data=torch.ones(1))
        self.mask = torch.as_tensor(mask, dtype=torch.float32)  # a plain attribute: not in state_dict

    def forward(self, x):
        B, N, C = x.size()
        h = torch.matmul(x, self.W)
        a_input = torch.cat([h.repeat(1, 1, N).view(B, N * N, C), h.repeat(1, N, 1)], dim=2).view(
            B, N, N, 2 * self.out_features
        )
        attention = self.leakyrelu(torch.matmul(a_input, self.a).squeeze(3))
        mask = self.mask
        attention = attention.mul(mask)
        attention = F.softmax(attention, dim=2)
        attention = F.dropout(attention, self.dropout, training=self.training)
        h_prime = torch.bmm(attention, h)
        out = F.elu(h_prime + self.beta * h)
        return out


class SeedHead(nn.Module):
    def __init__(self, nclasses, mask, channels=2048):
        super().__init__()
        self.gmp = nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Linear(channels, nclasses)
        self.gat = SeedBGATLayer(in_features=1, out_features=1, dropout=0, alpha=0.2, mask=mask)

    def forward(self, x):
        B, C, _, _ = x.size()
        x = self.gmp(x).view(B, C)
        x = self.fc(x)
        x = x.view(x.size(0), x.size(1), 1)
        residual = x
        output = residual + self.gat(x)
        output = output.squeeze(2)
        return output


class SeedResnet(nn.Module):
    def __init__(self, resnet, nclasses, mask):
        super().__init__()
        self.features = nn.Sequential(
            resnet.conv1,
            resnet.bn1,
            resnet.relu,
            resnet.maxpool,
            resnet.layer1,
            resnet.layer2,
            resnet.layer3,
            resnet.layer4,
        )
        self.heads = SeedHead(nclasses, mask, channels=resnet.fc.in_features)

    def forward(self, x):
        x = self.features(x)
        return self.heads(x)
